"""``runArgs``: the ``docker run`` flags a config may pass, parsed into their meaning.

Berth creates containers through the Engine API, not the docker CLI, so each flag is
understood rather than passed through; a flag not listed here is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.devcontainer.errors import ConfigError

# flag -> (attribute, takes a value, repeatable)
_FLAGS = {
    "-e": ("env", True, True),
    "--env": ("env", True, True),
    "-l": ("labels", True, True),
    "--label": ("labels", True, True),
    "-h": ("hostname", True, False),
    "--hostname": ("hostname", True, False),
    "--init": ("init", False, False),
    "--cap-add": ("cap_add", True, True),
    "--cap-drop": ("cap_drop", True, True),
    "--security-opt": ("security_opt", True, True),
    "-u": ("user", True, False),
    "--user": ("user", True, False),
    "-w": ("workdir", True, False),
    "--workdir": ("workdir", True, False),
    "--add-host": ("extra_hosts", True, True),
    "--shm-size": ("shm_size", True, False),
    "--privileged": ("privileged", False, False),
    "--network": ("network", True, False),
    "--net": ("network", True, False),
    "--pid": ("pid", True, False),
    "--ipc": ("ipc", True, False),
    "--device": ("devices", True, True),
    "-v": ("volumes", True, True),
    "--volume": ("volumes", True, True),
    "--mount": ("mounts", True, True),
    "-p": ("publish", True, True),
    "--publish": ("publish", True, True),
}


@dataclass
class RunArgs:
    env: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    hostname: str | None = None
    init: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    user: str | None = None
    workdir: str | None = None
    extra_hosts: list[str] = field(default_factory=list)
    shm_size: str | None = None
    privileged: bool = False
    network: str | None = None
    pid: str | None = None
    ipc: str | None = None
    devices: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in self.env)

    @property
    def volume_mounts(self) -> list[dict]:
        """``-v``/``--volume`` as mount objects: ``name:/path[:ro]`` a named volume,
        ``/host:/path`` a bind of a host path, ``/path`` an anonymous volume."""
        found = []
        for item in self.volumes:
            parts = item.split(":")
            if len(parts) == 1:
                found.append({"type": "volume", "target": parts[0]})
                continue
            source, target, options = parts[0], parts[1], parts[2:]
            kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
            mount = {"type": kind, "source": source, "target": target}
            if "ro" in ",".join(options).split(","):
                mount["readonly"] = "true"
            found.append(mount)
        return found

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in self.labels)


def parse(args: list[str], file=None) -> RunArgs:
    parsed = RunArgs()
    items = list(args)
    while items:
        item = items.pop(0)
        flag, has_inline, inline = item.partition("=")
        if flag not in _FLAGS:
            raise ConfigError(
                f"{item!r} is not a supported docker run flag (supported: "
                f"{', '.join(sorted({f for f in _FLAGS if f.startswith('--')}))})",
                file=file,
                property="runArgs",
            )
        attribute, takes_value, repeatable = _FLAGS[flag]
        if not takes_value:
            setattr(parsed, attribute, True)
            continue
        if has_inline:
            value = inline
        elif items:
            value = items.pop(0)
        else:
            raise ConfigError(f"{flag} needs a value", file=file, property="runArgs")
        if repeatable:
            getattr(parsed, attribute).append(value)
        else:
            setattr(parsed, attribute, value)
    return parsed

"""Errors of the devcontainer engine. Each names what is wrong and where."""

from __future__ import annotations


class DevcontainerError(Exception):
    """Base class: ``str(error)`` is a complete sentence for the person who wrote the config."""

    def __init__(
        self, message: str, *, file=None, property: str | None = None, line: int | None = None
    ):
        where = ""
        if file is not None:
            where = f"{file}"
            if line is not None:
                where += f":{line}"
            where += ": "
        if property:
            where += f"{property}: "
        super().__init__(where + message)
        self.file, self.property, self.line = file, property, line


class ConfigError(DevcontainerError):
    """devcontainer.json cannot be read or has a value of the wrong kind."""


class FeatureError(DevcontainerError):
    """A Feature cannot be found, fetched, ordered or read."""


class BuildError(DevcontainerError):
    """The image build failed; ``log`` keeps every line the build printed."""

    def __init__(self, message: str, log: list[str] | None = None, **where):
        super().__init__(message, **where)
        self.log = log or []


class PolicyError(DevcontainerError):
    """The config asks for something Berth's security policy does not allow."""

    def __init__(self, property: str, rule: str, file=None):
        super().__init__(rule, file=file, property=property)
        self.rule = rule


class LifecycleError(DevcontainerError):
    """A lifecycle command exited non-zero; later commands did not run."""

    def __init__(self, hook: str, origin: str, exit_code: int, output: str = ""):
        super().__init__(f"{hook} from {origin} failed with exit code {exit_code}", property=hook)
        self.hook, self.origin, self.exit_code, self.output = hook, origin, exit_code, output

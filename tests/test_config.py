"""Settings: defaults, precedence, and refusals that name the setting."""

import pytest

from app.config import ConfigError, Settings
from app.durations import parse_duration
from tests.services import berth


def test_defaults_select_the_embedded_instance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.load(environ={})
    assert settings.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite:///{tmp_path}/data/berth.db"
    assert (settings.port, settings.ssh_port, settings.host) == (8080, 2222, "127.0.0.1")
    assert settings.public_url == "http://127.0.0.1:8080"
    assert not settings.uses_tls


def test_flags_beat_environment_beat_file(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "berth.toml").write_text('port = 9001\nssh_port = 2300\nlog_level = "debug"\n')
    env = {"BERTH_DATA_DIR": str(data), "BERTH_PORT": "9002"}
    settings = Settings.load({"port": 9003}, environ=env)
    assert settings.port == 9003 and settings.sources["port"] == "command line"
    settings = Settings.load(environ=env)
    assert settings.port == 9002 and settings.sources["port"] == "environment"
    assert settings.ssh_port == 2300 and settings.sources["ssh_port"] == "config file"
    assert settings.log_level == "debug"


def test_postgres_url_selects_postgres(tmp_path):
    settings = Settings.load(
        environ={"BERTH_DATA_DIR": str(tmp_path), "BERTH_DATABASE_URL": "postgresql://u:p@db/berth"}
    )
    assert not settings.is_sqlite


@pytest.mark.parametrize(
    ("env", "setting", "words"),
    [
        ({"BERTH_PORT": "http"}, "BERTH_PORT", "not a port number"),
        ({"BERTH_SSH_PORT": "70000"}, "BERTH_SSH_PORT", "not a port number"),
        ({"BERTH_DATABASE_URL": "mysql://x/y"}, "BERTH_DATABASE_URL", "unsupported database"),
        ({"BERTH_DATABASE_URL": "postgresql://"}, "BERTH_DATABASE_URL", "needs a host"),
        ({"BERTH_PUBLIC_URL": "berth.example"}, "BERTH_PUBLIC_URL", "not an http"),
        ({"BERTH_LOG_LEVEL": "loud"}, "BERTH_LOG_LEVEL", "not one of"),
        ({"BERTH_LOGIN_LIMIT_IP": "lots"}, "BERTH_LOGIN_LIMIT_IP", "not a rate limit"),
        ({"BERTH_SECRET_KEY": "short"}, "BERTH_SECRET_KEY", "at least 32"),
        ({"BERTH_CONFIG": "/nonexistent/berth.toml"}, "BERTH_CONFIG", "does not exist"),
    ],
)
def test_a_wrong_value_names_the_setting(tmp_path, env, setting, words):
    with pytest.raises(ConfigError) as refusal:
        Settings.load(environ={"BERTH_DATA_DIR": str(tmp_path), **env})
    assert refusal.value.setting == setting
    assert str(refusal.value).startswith(setting + ":")
    assert words in str(refusal.value)


def test_config_file_errors_name_the_file(tmp_path):
    (tmp_path / "berth.toml").write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(environ={"BERTH_DATA_DIR": str(tmp_path)})
    (tmp_path / "berth.toml").write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown settings: prot"):
        Settings.load(environ={"BERTH_DATA_DIR": str(tmp_path)})


def test_secret_key_is_created_once_and_kept(tmp_path):
    settings = Settings.load(environ={"BERTH_DATA_DIR": str(tmp_path / "d")})
    settings.ensure_data_dir()
    again = Settings.load(environ={"BERTH_DATA_DIR": str(tmp_path / "d")})
    again.ensure_data_dir()
    assert len(settings.secret_key) >= 32 and settings.secret_key == again.secret_key
    assert (tmp_path / "d" / "secret_key").stat().st_mode & 0o777 == 0o600


def test_the_cli_stops_with_the_setting_named(tmp_path):
    result = berth(
        "migrate", env={"BERTH_DATA_DIR": str(tmp_path), "BERTH_PORT": "eighty"}, check=False
    )
    assert result.returncode == 2
    assert "configuration error: BERTH_PORT: 'eighty' is not a port number" in result.stderr
    assert "Traceback" not in result.stderr


def test_durations():
    assert parse_duration("30d").days == 30
    assert parse_duration("1h30m").total_seconds() == 5400
    for bad in ("", "10", "abc", "5x", "0h", "-1d"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_mail_settings_name_what_is_missing_or_wrong(tmp_path):
    base = {"data_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="BERTH_SMTP_FROM.*the address mail comes from"):
        Settings.load({**base, "smtp_host": "mail.team.test"}, environ={})
    with pytest.raises(
        ConfigError, match="BERTH_SMTP_TLS.*'tls' is not one of starttls, ssl, none"
    ):
        Settings.load({**base, "smtp_tls": "tls"}, environ={})
    settings = Settings.load(
        {**base, "smtp_host": "mail.team.test", "smtp_from": "berth@team.test"}, environ={}
    )
    assert (settings.smtp_port, settings.smtp_tls) == (587, "starttls")

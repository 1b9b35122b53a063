"""Settings: env vars and flags, validation with one clear line, masked secrets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.__main__ import main
from service.config import (
    ConfigError,
    ReaperSettings,
    Secret,
    Settings,
    ZegoSettings,
    argument_parser,
    env_names,
    leaves,
    load_settings,
)

SECRET = "0123456789abcdef0123456789abcdef"


def test_defaults_use_the_emulator() -> None:
    settings = load_settings([], {})
    assert settings.uses_emulator
    assert settings.listen.grpc == "127.0.0.1:50051"
    assert settings.listen.http == "127.0.0.1:8080"
    assert settings.zego.api_base == "https://aigc-aiagent-api.zegotech.cn"
    assert settings.sessions.voice_limit == settings.sessions.digital_human_limit == 10


def test_env_and_flags_with_flags_winning() -> None:
    env = {
        "AGENTGW_ZEGO_APP_ID": "12345",
        "AGENTGW_ZEGO_SERVER_SECRET": SECRET,
        "AGENTGW_ZEGO_API_BASE": "fra",
        "AGENTGW_VOICE_LIMIT": "3",
        "AGENTGW_DB_PATH": "/tmp/x.db",
    }
    settings = load_settings(["--voice-limit", "4", "--log-level", "debug"], env)
    assert not settings.uses_emulator
    assert settings.zego.app_id == 12345
    assert settings.zego.server_secret == Secret(SECRET)
    assert settings.zego.api_base == "https://aigc-aiagent-api-fra.zegotech.cn"
    assert settings.sessions.voice_limit == 4
    assert settings.server.log_level == "DEBUG"
    assert settings.ledger.db_path == Path("/tmp/x.db")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AGENTGW_ZEGO_APP_ID": "abc"}, "AGENTGW_ZEGO_APP_ID"),
        ({"AGENTGW_ZEGO_APP_ID": "0"}, "AGENTGW_ZEGO_APP_ID"),
        ({"AGENTGW_ZEGO_SERVER_SECRET": "short"}, "AGENTGW_ZEGO_SERVER_SECRET"),
        ({"AGENTGW_ZEGO_APP_ID": "12"}, "AGENTGW_ZEGO_SERVER_SECRET"),
        ({"AGENTGW_ZEGO_API_BASE": "mars"}, "AGENTGW_ZEGO_API_BASE"),
        ({"AGENTGW_ZEGO_DIGITAL_HUMAN_API_BASE": "sgp"}, "AGENTGW_ZEGO_DIGITAL_HUMAN_API_BASE"),
        ({"AGENTGW_DIGITAL_HUMAN_VALIDATION": "maybe"}, "AGENTGW_DIGITAL_HUMAN_VALIDATION"),
        ({"AGENTGW_DIGITAL_HUMAN_CACHE_SECONDS": "-1"}, "AGENTGW_DIGITAL_HUMAN_CACHE_SECONDS"),
        ({"AGENTGW_GRPC_LISTEN": "nohost"}, "AGENTGW_GRPC_LISTEN"),
        ({"AGENTGW_VOICE_LIMIT": "-1"}, "AGENTGW_VOICE_LIMIT"),
        ({"AGENTGW_LOG_LEVEL": "loud"}, "AGENTGW_LOG_LEVEL"),
        ({"AGENTGW_MAX_SESSION_DURATION_SECONDS": "99999"}, "AGENTGW_MAX_SESSION_DURATION_SECONDS"),
        ({"AGENTGW_LEAK_GIVE_UP_SECONDS": "0"}, "AGENTGW_LEAK_GIVE_UP_SECONDS"),
        ({"AGENTGW_LEAK_RETRY_INITIAL_SECONDS": "nan"}, "AGENTGW_LEAK_RETRY_INITIAL_SECONDS"),
        ({"AGENTGW_LEAK_RETRY_MAX_SECONDS": "1"}, "AGENTGW_LEAK_RETRY_MAX_SECONDS"),
        ({"AGENTGW_REAPER_INTERVAL_SECONDS": "0"}, "AGENTGW_REAPER_INTERVAL_SECONDS"),
        ({"AGENTGW_REAPER_INTERVAL_SECONDS": "3601"}, "AGENTGW_REAPER_INTERVAL_SECONDS"),
        ({"AGENTGW_REAPER_STARTING_TIMEOUT_SECONDS": "-1"}, "AGENTGW_REAPER_STARTING_TIMEOUT_SECONDS"),
        ({"AGENTGW_REAPER_ENDING_TIMEOUT_SECONDS": "soon"}, "AGENTGW_REAPER_ENDING_TIMEOUT_SECONDS"),
        ({"AGENTGW_REAPER_PENDING_GRACE_SECONDS": "inf"}, "AGENTGW_REAPER_PENDING_GRACE_SECONDS"),
        ({"AGENTGW_REAPER_ACTIVE_PROBE_SECONDS": "0"}, "AGENTGW_REAPER_ACTIVE_PROBE_SECONDS"),
        ({"AGENTGW_DATABASE_URL": "mysql://db/agentgw"}, "AGENTGW_DATABASE_URL"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings([], env)
    message = str(info.value)
    assert message.startswith(named + ":")
    assert "\n" not in message


def test_digital_human_settings() -> None:
    settings = load_settings(
        [],
        {
            "AGENTGW_ZEGO_DIGITAL_HUMAN_API_BASE": "sample",
            "AGENTGW_DIGITAL_HUMAN_VALIDATION": "STRICT",
            "AGENTGW_DIGITAL_HUMAN_CACHE_SECONDS": "0",
        },
    )
    assert settings.zego.digital_human_api_base == "https://aigc-digital-human-api.zegotech.cn"
    assert settings.digital_humans.validation == "strict"
    assert settings.digital_humans.cache_seconds == 0.0
    assert load_settings([], {}).zego.digital_human_api_base is None


def test_invalid_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--voice-limit: "):
        load_settings(["--voice-limit", "many"], {})


def test_secrets_are_masked_everywhere() -> None:
    settings = load_settings([], {"AGENTGW_ZEGO_APP_ID": "1", "AGENTGW_ZEGO_SERVER_SECRET": SECRET,
                                  "AGENTGW_ZEGO_CALLBACK_SECRET": "cb-secret-value"})  # fmt: skip
    for text in (repr(settings), str(settings), str(settings.describe())):
        assert SECRET not in text and "cb-secret-value" not in text
    assert settings.zego.server_secret is not None and settings.zego.server_secret.reveal() == SECRET


def test_main_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTGW_ZEGO_APP_ID", "not-a-number")
    assert main([]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "agentgw: invalid configuration: AGENTGW_ZEGO_APP_ID: not a number"


# --- security settings ------------------------------------------------------------------------------


def test_auth_off_on_a_reachable_address_refuses_to_start_in_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(["--grpc-listen", "0.0.0.0:50051"], {})
    message = str(info.value)
    assert "\n" not in message and message.startswith("AGENTGW_AUTH_MODE:")
    assert "AGENTGW_ALLOW_INSECURE=true" in message
    allowed = load_settings(["--grpc-listen", "0.0.0.0:50051"], {"AGENTGW_ALLOW_INSECURE": "true"})
    assert allowed.auth.allow_insecure and allowed.auth.mode == frozenset({"none"})
    for loopback in ("127.0.0.1:1", "[::1]:1", "localhost:1", "127.0.0.2:1"):
        assert load_settings(["--grpc-listen", loopback], {}).listen.grpc == loopback


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"AGENTGW_AUTH_MODE": "jwt"}, "AGENTGW_AUTH_JWKS_FILE"),
        ({"AGENTGW_AUTH_MODE": "mtls"}, "AGENTGW_TLS_CLIENT_CA_FILE"),
        ({"AGENTGW_AUTH_MODE": "kerberos"}, "AGENTGW_AUTH_MODE"),
        ({"AGENTGW_AUTH_MODE": "none,jwt"}, "AGENTGW_AUTH_MODE"),
        ({"AGENTGW_AUTH_ROLES": "sre-bot=root"}, "AGENTGW_AUTH_ROLES"),
        ({"AGENTGW_AUTH_ROLES": "no-equals"}, "AGENTGW_AUTH_ROLES"),
        ({"AGENTGW_AUTH_LEEWAY_SECONDS": "3600"}, "AGENTGW_AUTH_LEEWAY_SECONDS"),
        ({"AGENTGW_AUTH_JWKS_FILE": "/nonexistent/jwks.json"}, "AGENTGW_AUTH_JWKS_FILE"),
        ({"AGENTGW_AUTH_JWKS_URL": "ftp://idp/jwks"}, "AGENTGW_AUTH_JWKS_URL"),
        ({"AGENTGW_ALLOW_INSECURE": "maybe"}, "AGENTGW_ALLOW_INSECURE"),
        ({"AGENTGW_CALLBACK_LISTEN": "nowhere"}, "AGENTGW_CALLBACK_LISTEN"),
    ],
)
def test_bad_security_settings_name_their_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings([], env)
    assert str(info.value).startswith(variable + ":")


def test_tls_files_come_in_pairs(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match=r"^AGENTGW_TLS_KEY_FILE:"):
        load_settings([], {"AGENTGW_TLS_CERT_FILE": str(cert)})
    with pytest.raises(ConfigError, match=r"^AGENTGW_TLS_CERT_FILE:"):
        load_settings([], {"AGENTGW_TLS_CLIENT_CA_FILE": str(cert)})
    settings = load_settings(
        [],
        {
            "AGENTGW_TLS_CERT_FILE": str(cert),
            "AGENTGW_TLS_KEY_FILE": str(cert),
            "AGENTGW_TLS_CLIENT_CA_FILE": str(cert),
            "AGENTGW_AUTH_MODE": "mtls",
            "AGENTGW_AUTH_ROLES": "sre-bot=viewer, ops=admin",
            "AGENTGW_GRPC_LISTEN": "0.0.0.0:50051",
        },
    )
    assert settings.listen.tls and settings.auth.mode == frozenset({"mtls"})
    assert dict(settings.auth.roles) == {"sre-bot": "viewer", "ops": "admin"}


# --- the nested settings ------------------------------------------------------------------------------


def test_each_component_has_its_section() -> None:
    settings = load_settings(
        ["--reaper-active-probe-seconds", "90", "--heartbeat-seconds", "2"],
        {
            "AGENTGW_REAPER_INTERVAL_SECONDS": "0.5",
            "AGENTGW_REAPER_PENDING_GRACE_SECONDS": "0",
            "AGENTGW_REAPER_ACTIVE_PROBE_SECONDS": "30",
            "AGENTGW_EVENT_RETENTION_SECONDS": "60",
            "AGENTGW_CALLBACK_LISTEN": "127.0.0.1:9000",
        },
    )
    assert settings.reaper == ReaperSettings(
        interval_seconds=0.5, pending_grace_seconds=0.0, active_probe_seconds=90.0
    )
    assert settings.events.heartbeat_seconds == 2.0
    assert settings.retention.events_seconds == 60
    assert (
        settings.listen.callback == "127.0.0.1:9000" and settings.listen.callback_address == "127.0.0.1:9000"
    )
    assert settings.listen.admin_address == settings.listen.http
    assert settings.sessions.limits == {"voice": 10, "digital_human": 10}
    assert load_settings([], {}).reaper == ReaperSettings()


def test_the_sections_are_frozen() -> None:
    settings = load_settings([], {})
    with pytest.raises(AttributeError):
        settings.reaper.interval_seconds = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.zego = ZegoSettings()  # type: ignore[misc]


def test_from_flat_takes_the_public_keys() -> None:
    settings = Settings.from_flat(voice_limit=2, grpc_listen="127.0.0.1:1", reaper_interval_seconds=1.0)
    assert settings.sessions.voice_limit == 2 and settings.listen.grpc == "127.0.0.1:1"
    assert settings.reaper.interval_seconds == 1.0 and settings.zego == ZegoSettings()
    assert Settings.from_flat(**settings.flat()) == settings
    with pytest.raises(TypeError, match="'voice_limits'"):
        Settings.from_flat(voice_limits=2)


def test_the_database_url_is_masked() -> None:
    url = "postgresql://agentgw:hunter2@db.internal/agentgw"
    settings = load_settings([], {"AGENTGW_DATABASE_URL": url})
    assert settings.ledger.database_url == Secret(url)
    for text in (repr(settings), str(settings.describe())):
        assert "hunter2" not in text


def test_help_lists_every_setting_by_section_with_its_default_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag: argparse wraps at hyphens otherwise
    text = " ".join(argument_parser().format_help().split())
    for leaf in leaves():
        flag = "--" + leaf.key.replace("_", "-")
        default = "unset" if leaf.default is None else str(leaf.default)
        assert f"{flag} {leaf.key.upper()}" in text
        assert f"(default: {default}; env AGENTGW_{leaf.key.upper()})" in text, leaf.key
    assert "reaper settings:" in text and "listen settings:" in text
    assert "(default: 5.0; env AGENTGW_REAPER_INTERVAL_SECONDS)" in text


def test_the_readme_table_lists_every_setting_and_only_settings() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n\n| Variable |", 1)[1].split("\n\n", 1)[0]
    variables = set(re.findall(r"`(AGENTGW_[A-Z_]+)`", table))
    flags = set(re.findall(r"`(--[a-z-]+)`", table))
    assert variables == env_names()
    assert flags - {"--fresh"} == {"--" + leaf.key.replace("_", "-") for leaf in leaves()}


def test_the_config_package_is_a_leaf() -> None:
    # The domain imports its settings sections, so loading them must not load a component, gRPC
    # or HTTP (the parsers that need a component's vocabulary import it when they run).
    code = (
        "import sys, service.config; "
        "bad = sorted(m for m in sys.modules if m.startswith(('grpc', 'httpx', 'starlette', 'service.'))"
        " and not m.startswith('service.config')); print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

"""Settings: env vars and flags, validation with one clear line, masked secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.__main__ import main
from service.config import ConfigError, Secret, load_settings

SECRET = "0123456789abcdef0123456789abcdef"


def test_defaults_use_the_emulator() -> None:
    settings = load_settings([], {})
    assert settings.uses_emulator
    assert settings.grpc_listen == "127.0.0.1:50051"
    assert settings.http_listen == "127.0.0.1:8080"
    assert settings.zego_api_base == "https://aigc-aiagent-api.zegotech.cn"
    assert settings.voice_limit == settings.digital_human_limit == 10


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
    assert settings.zego_app_id == 12345
    assert settings.zego_server_secret == Secret(SECRET)
    assert settings.zego_api_base == "https://aigc-aiagent-api-fra.zegotech.cn"
    assert settings.voice_limit == 4
    assert settings.log_level == "DEBUG"
    assert settings.db_path == Path("/tmp/x.db")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AGENTGW_ZEGO_APP_ID": "abc"}, "AGENTGW_ZEGO_APP_ID"),
        ({"AGENTGW_ZEGO_APP_ID": "0"}, "AGENTGW_ZEGO_APP_ID"),
        ({"AGENTGW_ZEGO_SERVER_SECRET": "short"}, "AGENTGW_ZEGO_SERVER_SECRET"),
        ({"AGENTGW_ZEGO_APP_ID": "12"}, "AGENTGW_ZEGO_SERVER_SECRET"),
        ({"AGENTGW_ZEGO_API_BASE": "mars"}, "AGENTGW_ZEGO_API_BASE"),
        ({"AGENTGW_GRPC_LISTEN": "nohost"}, "AGENTGW_GRPC_LISTEN"),
        ({"AGENTGW_VOICE_LIMIT": "-1"}, "AGENTGW_VOICE_LIMIT"),
        ({"AGENTGW_LOG_LEVEL": "loud"}, "AGENTGW_LOG_LEVEL"),
        ({"AGENTGW_MAX_SESSION_DURATION_SECONDS": "99999"}, "AGENTGW_MAX_SESSION_DURATION_SECONDS"),
        ({"AGENTGW_LEAK_GIVE_UP_SECONDS": "0"}, "AGENTGW_LEAK_GIVE_UP_SECONDS"),
        ({"AGENTGW_LEAK_RETRY_INITIAL_SECONDS": "nan"}, "AGENTGW_LEAK_RETRY_INITIAL_SECONDS"),
        ({"AGENTGW_LEAK_RETRY_MAX_SECONDS": "1"}, "AGENTGW_LEAK_RETRY_MAX_SECONDS"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings([], env)
    message = str(info.value)
    assert message.startswith(named + ":")
    assert "\n" not in message


def test_invalid_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--voice-limit: "):
        load_settings(["--voice-limit", "many"], {})


def test_secrets_are_masked_everywhere() -> None:
    settings = load_settings([], {"AGENTGW_ZEGO_APP_ID": "1", "AGENTGW_ZEGO_SERVER_SECRET": SECRET,
                                  "AGENTGW_ZEGO_CALLBACK_SECRET": "cb-secret-value"})  # fmt: skip
    for text in (repr(settings), str(settings), str(settings.describe())):
        assert SECRET not in text and "cb-secret-value" not in text
    assert settings.zego_server_secret is not None and settings.zego_server_secret.reveal() == SECRET


def test_main_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTGW_ZEGO_APP_ID", "not-a-number")
    assert main([]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "agentgw: invalid configuration: AGENTGW_ZEGO_APP_ID: not a number"

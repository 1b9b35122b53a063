"""The one configuration object: a frozen ``Settings`` of frozen sections, loaded from env vars and flags.

``Settings`` holds one section per consuming component (``settings.zego``, ``settings.listen``,
``settings.reaper``...), each handed whole to that component, in the way temporalio's frozen
config dataclasses are. Every setting keeps its public key, which names the environment variable
``AGENTGW_<KEY>`` and the flag ``--<key-with-dashes>``; a flag wins over the variable, and both win
over the default. Invalid input raises ``ConfigError`` with one line naming the variable (or flag)
at fault, so start-up fails clearly.

Secrets are held in ``Secret``, whose ``repr`` and ``str`` are masked: printing the settings, or
logging them, never shows a secret.

Modules: ``values`` (Secret, parsers), ``sections`` and ``domain`` (the sections), ``settings``
(the root), ``loader`` (flags, variables, checks across fields).
"""

from service.config.domain import (
    REAPER_MAX_INTERVAL_SECONDS,
    CallbackSettings,
    DigitalHumanSettings,
    EventSettings,
    LatencySettings,
    LeakSettings,
    ReaperSettings,
    RetentionSettings,
    SessionSettings,
)
from service.config.loader import ENV_PREFIX, argument_parser, env_name, env_names, load_settings
from service.config.sections import (
    AuthSettings,
    EmulatorSettings,
    LedgerSettings,
    ListenSettings,
    ServerSettings,
    ZegoSettings,
)
from service.config.settings import Leaf, Settings, leaves
from service.config.values import ConfigError, Secret, redact_url

__all__ = [
    "ENV_PREFIX",
    "REAPER_MAX_INTERVAL_SECONDS",
    "AuthSettings",
    "CallbackSettings",
    "ConfigError",
    "DigitalHumanSettings",
    "EmulatorSettings",
    "EventSettings",
    "LatencySettings",
    "Leaf",
    "LeakSettings",
    "LedgerSettings",
    "ListenSettings",
    "ReaperSettings",
    "RetentionSettings",
    "Secret",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "ZegoSettings",
    "argument_parser",
    "env_name",
    "env_names",
    "leaves",
    "load_settings",
    "redact_url",
]

"""ZEGO's configuration objects (spec §6): LLM, TTS, ASR, VAD, MessageHistory, CallbackConfig.

Each function checks one object read through :class:`~.validation.Fields` and returns what the state keeps.
"""

from __future__ import annotations

from . import errors
from .errors import ZegoError, invalid
from .validation import Fields, Json

__all__ = ["asr", "callback_config", "history", "llm", "messages", "tts", "vad"]

LLM_VENDORS = ("OpenAIChat", "OpenAIResponses")
# The yaml enum plus the legacy "ByteDance" still used by ZEGO's own examples (spec §6.3). Matching is
# case-insensitive because the docs spell them "Minimax"/"Bytedance" too and the real rule is unknown;
# the value is stored and read back exactly as sent.
TTS_VENDORS = ("Aliyun", "ByteDanceV3", "ByteDanceFlowing", "MiniMax", "CosyVoice", "ByteDance")
ASR_VENDORS = ("Tencent", "AliyunParaformer", "Microsoft", "AliyunFunASR", "AliyunQwenASR", "VolcSeedASR")

# Spec §6.2: the trial key "zego_test" only works with these (Url, Model) pairs; anything else is 410001047.
ZEGO_TEST_LLM_PAIRS = frozenset(
    {
        ("https://api.minimax.chat/v1/text/chatcompletion_v2", "MiniMax-Text-01"),
        ("https://ark.cn-beijing.volces.com/api/v3/chat/completions", "doubao-1-5-pro-32k-250115"),
        ("https://ark.cn-beijing.volces.com/api/v3/chat/completions", "doubao-1-5-lite-32k-250115"),
        ("https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions", "qwen-plus"),
        ("https://api.stepfun.com/v1/chat/completions", "step-2-16k"),
    }
)


def llm(f: Fields | None) -> Json | None:
    """``LLM`` (§6.2): Url, ApiKey and Model are required."""
    if f is None:
        return None
    f.text("Vendor", choices=LLM_VENDORS)
    url = f.text("Url", required=True)
    key = f.text("ApiKey", required=True)
    model = f.text("Model", required=True)
    f.text("SystemPrompt")
    f.number("Temperature", lo=0, hi=2)
    f.number("TopP", lo=0, hi=1)
    f.obj("Params")
    f.boolean("AddAgentInfo")
    f.obj("AgentExtraInfo")
    if key == "zego_test" and (url, model) not in ZEGO_TEST_LLM_PAIRS:
        raise ZegoError(
            errors.ZEGO_TEST_KEY_NOT_ALLOWED,
            f'{f.name("ApiKey")} "zego_test" is only allowed with the documented trial Url and Model pairs',
        )
    return f.clean()


def tts(f: Fields | None) -> Json | None:
    """``TTS`` (§6.3): Vendor and Params (with Params.app) are required."""
    if f is None:
        return None
    out = f.clean()
    # Stored as sent: reads return the caller's spelling ("Bytedance"), which ZEGO's sample compares
    # for equality; only the check against the enum ignores case (spec §15.8) [INFER].
    f.text("Vendor", required=True, choices=TTS_VENDORS, fold_case=True)
    params = f.obj("Params", required=True)
    assert params is not None
    params.obj("app", required=True)
    f.text("Url")
    for item in f.objects("FilterText"):
        item.text("BeginCharacters", required=True)
        item.text("EndCharacters", required=True)
    f.text("TerminatorText", max_chars=4)
    f.strings("CharacterFilter", max_chars=2)
    return out


def asr(f: Fields | None) -> Json | None:
    """``ASR`` (§6.4): everything is optional."""
    if f is None:
        return None
    out = f.clean()
    f.text("Vendor", choices=ASR_VENDORS, fold_case=True)  # stored as sent, like TTS.Vendor
    f.obj("Params")
    f.number("VADSilenceSegmentation")
    f.number("PauseInterval")
    f.integer("VADSensitiveLevel", lo=0, hi=3)
    f.integer("VADMinSpeechDur")
    f.number("VADEnergyThreshold")
    f.text("HotWord")
    return out


def vad(f: Fields | None) -> None:
    """``VAD`` (§6.5): ranges only."""
    if f is None:
        return
    turn = f.obj("TurnDetectConfig")
    if turn is not None:
        turn.integer("SilenceSegmentation", lo=200, hi=2000)
        turn.integer("PauseInterval", lo=200, hi=2000)
    voice = f.obj("VoiceDetectConfig")
    sensitive = voice.obj("SensitiveConfig") if voice is not None else None
    if sensitive is not None:
        sensitive.integer("Level", lo=0, hi=3)
        sensitive.integer("MinSpeechDur", lo=0, hi=1000)
        sensitive.number("EnergyThreshold", lo=0, hi=1)


def messages(f: Fields, key: str, *, max_items: int | None = None) -> list[Json]:
    """An array of ``Message`` (§6.7): Role user|assistant and Content are required."""
    out: list[Json] = []
    for item in f.objects(key, max_items=max_items):
        role = item.text("Role", required=True, choices=("user", "assistant"))
        content = item.raw("Content")
        if content is None:
            raise invalid(f"{item.name('Content')} is required")
        if not isinstance(content, str):
            raise invalid(f"{item.name('Content')} must be a string")
        out.append({"Role": role, "Content": content})
    return out


def history(f: Fields | None) -> list[Json]:
    """``MessageHistory`` (§6.6): the seeded context (only SyncMode 1 seeds it)."""
    if f is None:
        return []
    sync_mode = f.integer("SyncMode", choices=(0, 1)) or 0
    seeded = messages(f, "Messages", max_items=100)
    f.integer("WindowSize", lo=0, hi=500)
    zim = f.obj("ZIM")
    if zim is not None:
        zim.text("RobotId")
        zim.integer("LoadMessageCount", lo=0, hi=500)
    # SyncMode 0 loads history from ZIM, which the emulator does not have: the context starts empty.
    return seeded if sync_mode == 1 else []


def callback_config(f: Fields | None, *, live: bool) -> Json:
    """``CallbackConfig`` (§6.8) or ``CallbackConfig_Live`` (§5.8): 0/1 switches and HostTag."""
    if f is None:
        return {}
    flags = ("Interrupted", "AgentInstanceStatus") if live else (
        "ASRResult", "LLMResult", "Interrupted", "UserSpeakAction", "AgentInstanceStatus", "UserAudioData"
    )  # fmt: skip
    for name in flags:
        f.integer(name, choices=(0, 1))
    f.text("HostTag")
    return f.clean()

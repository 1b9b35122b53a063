"""`make demo` runs a whole digital-human call on the emulator and prints its events."""

from __future__ import annotations

import pytest

from service import demo


@pytest.mark.timeout(90)
async def test_demo_prints_a_live_call(capsys: pytest.CaptureFixture[str]) -> None:
    assert await demo.main() == 0
    out = capsys.readouterr().out
    for expected in ("created", "user_speech", "asr_result", "llm_result", "AGENT_STATE_SPEAKING"):
        assert expected in out
    assert out.count("asr_result") == len(demo.UTTERANCES)
    assert "END_REASON_ENDED_BY_CALLER" in out and "synthesized=False" in out
    assert "turns=4" in out
    # It lists the digital humans first and picks ZEGO's public test avatar, with its details.
    assert "5 digital humans available:" in out
    assert f"picked 'Quick-start presenter' ({demo.AVATAR}); actions: wave, nod; 3 public voices" in out
    assert f"avatar {demo.AVATAR}" in out

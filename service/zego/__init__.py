"""ZEGO AI Agent API: signing, Token04 and the typed async client (the emulator: ``zego_emulator``)."""

"""ZEGO AI Agent API: signing, the typed async client, and the wire-compatible emulator."""

"""The chaos suite (``make chaos``): agentgw and the ZEGO emulator as processes, under faults."""

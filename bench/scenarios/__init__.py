"""The six scenarios, in run order. Each is ``async def run(ctx: Context) -> None``."""

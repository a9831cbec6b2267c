"""The umbrella ``edgehouse`` command: the one place that composes every part (demo, tools)."""

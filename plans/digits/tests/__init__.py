"""The digits plan's unit tests (pytest puts plans/ on sys.path: `import digits...`)."""

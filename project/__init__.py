"""The character-level GPT plan (../shared/plan.md): a package of its own, loaded by the
harness from this folder (harness/plan.py: load_plan); plan.py declares it.
"""

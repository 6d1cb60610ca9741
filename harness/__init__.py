"""The harness: the generic machinery of research plans (stages, config resolution,
fingerprints, the planner and the dispatcher, atomic files, locks, cost records, input
checks, seeding, devices, multi-device launch). It names no plan and holds no model.
"""

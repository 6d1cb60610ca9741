"""M1–M4: the models (a CNN and a linear baseline), their interface and their one factory.

Light on purpose: importing `model.config` (as the configuration does) imports no torch.
"""

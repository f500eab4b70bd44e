"""The registered classifier names, torch-free: the command line lists them in ``--help``.

``registry.REGISTERED_BUILDERS`` maps each to its builder (a test keeps the two in step).
"""

CLASSIFIER_NAMES: tuple[str, ...] = ("lenet5", "lenet5_half", "resnet18", "resnet34", "wrn16_1", "wrn16_2", "wrn40_2")

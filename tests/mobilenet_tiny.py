"""Constructor arguments of a 4-block MobileNet search space on 8×8 inputs, shared by tests."""

TINY = dict(
    in_channels=1,
    num_classes=3,
    input_size=(8, 8),
    init_channels=8,
    width_mult=1.0,
    round_to=4,
    widths=[8, 16],
    depths=[2, 2],
    strides=[2, 2],
    first_channels=8,
    last_channels=16,
)

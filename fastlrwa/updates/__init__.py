"""Student and generator updates: pure gradient functions of (params, buffers, batches), and the objects
that apply them.

``options`` holds each update's typed options (torch-free); ``student_grads`` the plain and joint
gradient functions and ``make_student_grads``, which builds the trainer's student update once,
optionally compiled; ``lrwa`` the LRWA meta update; ``student_update.StudentUpdate`` applies a
student update with a fused optimiser; ``generator_update.GeneratorUpdate`` is the generator's step;
``student_batch`` the generator and teacher forwards that feed each student step.
"""

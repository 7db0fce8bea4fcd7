"""Keeps TensorFlow's start-up lines out of the scripts' output; import it before anything else.

TensorFlow's C++ side writes its start-up notices ("Could not find cuda drivers", "failed call
to cuInit", the oneDNN and CPU-instruction notices) straight to the process's standard error,
before its own logging is set up, so TF_CPP_MIN_LOG_LEVEL cannot hold them back; a new user
reads them as failures. Here TensorFlow is loaded, and its devices listed once, with the standard
error of the process pointed at /dev/null for that moment only. Errors after start-up are shown
as ever, and a failing import still raises. `--verbose` on the command line, or ALEXNET_VERBOSE=1,
shows the start-up lines again.
"""
import os
import sys

VERBOSE = '--verbose' in sys.argv[1:] or os.environ.get('ALEXNET_VERBOSE', '') not in ('', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '0' if VERBOSE else '2')
# oneDNN on every x86 CPU, not only on those TensorFlow turns it on for (AVX-512 ones): the NCHW layout,
# the bf16 rewrite and the measured speeds (README, Performance) all assume it. TF_ENABLE_ONEDNN_OPTS=0 turns it off.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')


def _load_tensorflow_silently():
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf            # the one place it is imported late: that is this module's job
        tf.config.list_logical_devices()   # the device start-up, which prints the CUDA notices
        tf.get_logger().setLevel('ERROR')  # the TF1 APIs' deprecation notices
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


if not VERBOSE and 'tensorflow' not in sys.modules:
    _load_tensorflow_silently()

from deepfocus.detection.tests.fixtures import *  # noqa: F403

"""Set-up of the dask workers that `deepfocus.batch.local_client` starts (a dask preload).

Every worker process runs `dask_setup` when it starts, also one that its nanny starts again after
the last one died: Ctrl-C, which the terminal sends to the whole process group, is left to the
main process (which stops the run and closes the cluster) instead of printing a
KeyboardInterrupt traceback in every worker, and the tasks that the closing cluster cancels are
not warned about.
"""

from __future__ import annotations

import logging
import signal
import threading


def dask_setup(worker):
    """Ignore SIGINT in this worker process; its cancelled tasks are not warned about."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)

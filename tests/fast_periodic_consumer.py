"""`huey_consumer`, with huey's scheduler looking for due periodic tasks every second instead
of every minute: a test cannot wait minutes for a periodic task (the only change; the
consumer, the tasks and their crontab are huey's and objlib's own).

    python tests/fast_periodic_consumer.py objlib.tasks.huey -w 2
"""

import sys

from huey.bin.huey_consumer import consumer_main
from huey.consumer import Scheduler

Scheduler.periodic_task_seconds = 1

if __name__ == "__main__":
    sys.exit(consumer_main())

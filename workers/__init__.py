"""GPU workers: the Celery app's tasks and the runtimes that render takes with `models`."""

"""The queue structures users open: Queue, Stack, PriorityQueue, PrefixQueue."""

"""Letters: templates in letters/, the queue filled by workflow transitions, print batches."""

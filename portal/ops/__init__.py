"""Operations: executors (SSH, dry run), actions, the ops worker, its page and `portal ops`."""

"""locod's training pipeline for the example robot: environment, teacher, students, world model,
export. See models/README.md."""

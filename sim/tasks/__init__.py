"""One module per task: its MJCF scene, its Task and its scripted expert."""

"""Lightning AI platform: stages as Studio jobs, data uploads, checkpoint storage, the stage chain."""

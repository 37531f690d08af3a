"""Frame ingest: cameras (video files, streams, image folders, the synthetic crowd) to lfr.frames.v1."""

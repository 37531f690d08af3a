"""The pipeline's stages, one Kafka service each: cameras to frames, faces, embeddings, matches and alerts."""

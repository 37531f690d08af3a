"""Per-camera stream metrics: frames received, decoded and sent, and the decode time.

Rates are ``rate()`` of the counters; the camera id is the only label (never a person or track).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

FRAMES_RECEIVED = Counter("lfr_camera_frames_received_total", "Encoded frames (demuxed packets) received from the camera's stream", ["camera"])
FRAMES_DECODED = Counter("lfr_camera_frames_decoded_total", "Frames the camera's decoder produced", ["camera"])
FRAMES_FORWARDED = Counter(
    "lfr_camera_frames_forwarded_total", "Frames of an MJPEG stream passed on as the camera encoded them: never decoded nor re-encoded", ["camera"])
FRAMES_SENT = Counter("lfr_camera_frames_sent_total", "Frames of the camera the broker acknowledged", ["camera"])
PACKETS_UNDECODABLE = Counter("lfr_camera_packets_undecodable_total", "Packets the decoder rejected (corrupt or lost data); the stream goes on", ["camera"])
DECODE_SECONDS = Histogram(
    "lfr_camera_decode_seconds", "CPU time to decode one packet of the camera's stream", ["camera"],
    buckets=(0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256),
)

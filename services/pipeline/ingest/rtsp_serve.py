"""A real RTSP server (GStreamer's gst-rtsp-server) serving a looped JPEG clip as IP cameras do.

Run by Debian's python3 (the `python3-gi`, `gir1.2-gst-rtsp-server-1.0` and GStreamer plugin
packages), never imported by the services: the test camera (testcamera.py) starts it as a
subprocess, so tests and benchmarks talk RTSP to a real server over a real socket. Each mount
re-encodes the clip live at the clip's frame rate, as a camera's encoder does:

- ``/h264``: x264 (baseline, zero latency, a key frame every second) at the clip's size;
- ``/h265``: x265 at a quarter of the clip's area (x265 at 1080p needs more than this
  machine's two cores);
- ``/mjpeg``: JPEG (RTP/JPEG, RFC 2435) at the same quarter area.

Usage: python3 rtsp_serve.py PORT CLIP_DIR FPS WIDTH HEIGHT. Prints "ready" once listening.
Media is shared: every client of a mount gets the same encoder, as with one camera.
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    port, clip_dir, fps, width, height = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    Gst.init(None)
    source = f'multifilesrc location="{clip_dir}/%05d.jpg" index=0 loop=true caps="image/jpeg,framerate={fps}/1"'
    gop = max(1, fps)
    mounts = {
        "/h264": f"( {source} ! jpegdec ! videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast "
        f"key-int-max={gop} bitrate=6000 ! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )",
        "/h265": f"( {source} ! jpegdec ! videoscale ! video/x-raw,width={width // 2},height={height // 2} ! videoconvert ! "
        f"video/x-raw,format=I420 ! x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=2000 ! "
        "rtph265pay name=pay0 pt=96 config-interval=1 )",
        # The clip's JPEGs carry no timestamps that RTP/JPEG could pace by: decoded (the decoder
        # stamps them from the frame rate), scaled like /h265 and encoded again.
        "/mjpeg": f"( {source} ! jpegdec ! videoscale ! video/x-raw,width={width // 2},height={height // 2} ! jpegenc quality=85 ! "
        "rtpjpegpay name=pay0 pt=26 )",
    }
    server = GstRtspServer.RTSPServer()
    server.set_service(port)
    for path, launch in mounts.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {port}", file=sys.stderr, flush=True)
        return 1
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

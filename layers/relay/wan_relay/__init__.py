"""wan-relay: relay finished Wan (DashScope) images and videos into S3 and announce them on EventBridge."""

__version__ = "0.1.0"

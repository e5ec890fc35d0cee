"""The dev server tells subscribers a track is stereo the way LiveKit does (TF_STEREO), so `channels=0`
processors see stereo publishers as stereo."""

from __future__ import annotations

import pytest
from livekit.protocol import models
from livekit.protocol import rtc as rtc_pb

pytest.importorskip("aiortc", reason="the dev server (framepool.devserver) needs the devserver extra")

from framepool.devserver.signal import audio_features


def test_the_dev_server_announces_a_stereo_publisher_with_the_tf_stereo_feature() -> None:
    stereo = models.AudioTrackFeature.TF_STEREO
    assert audio_features(rtc_pb.AddTrackRequest(stereo=True)) == [stereo]
    assert audio_features(rtc_pb.AddTrackRequest(audio_features=[stereo])) == [stereo]
    assert audio_features(rtc_pb.AddTrackRequest()) == []

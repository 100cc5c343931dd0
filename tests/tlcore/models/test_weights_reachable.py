"""tlcore.weights_reachable: whether the ImageNet download would start now, asked with a HEAD request."""

import urllib.error

import tlcore


class _Answer:
    def __init__(self, status):
        self.status = status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_head_request_that_answers_means_reachable(monkeypatch):
    asked = []

    def answer(request, timeout):
        asked.append((request.get_method(), request.full_url, timeout))
        return _Answer(200)

    monkeypatch.setattr("tlcore.models.imagenet_files.urllib.request.urlopen", answer)
    assert tlcore.weights_reachable("VGG16", timeout=1.5) is True
    file = tlcore.get_backbone("VGG16").weights_file(True, None)
    assert asked == [("HEAD", file.url, 1.5)]  # nothing downloaded


def test_offline_or_an_error_status_means_unreachable(monkeypatch):
    def offline(request, timeout):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("tlcore.models.imagenet_files.urllib.request.urlopen", offline)
    assert tlcore.weights_reachable("MobileNetV2") is False

    def missing(request, timeout):
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)

    monkeypatch.setattr("tlcore.models.imagenet_files.urllib.request.urlopen", missing)
    assert tlcore.weights_reachable("MobileNetV2") is False

    def slow(request, timeout):
        raise TimeoutError("timed out")

    monkeypatch.setattr("tlcore.models.imagenet_files.urllib.request.urlopen", slow)
    assert tlcore.weights_reachable("MobileNetV2") is False

"""Features keeps every uploaded image, however many share a name."""

from ui.file_names import named_apart


def test_files_that_share_a_name_are_all_kept_in_order_and_named_apart():
    files = [("image.jpg", b"1"), ("cat.jpg", b"2"), ("image.jpg", b"3"), ("image.jpg", b"4"),
             ("image.jpg (2)", b"5")]
    assert named_apart(files) == {"image.jpg": b"1", "cat.jpg": b"2", "image.jpg (2)": b"3",
                                  "image.jpg (3)": b"4", "image.jpg (2) (2)": b"5"}
    assert named_apart([]) == {}

"""A user's JSON file that is missing, damaged or not even text: one clear message each."""
import pytest

from oneshot_nas.errors import UserError
from oneshot_nas.runs.modelfile import read_meta


@pytest.mark.parametrize("content", [b"{not json", b"\x80\x81 binary"])
def test_a_damaged_model_description_is_named(tmp_path, content):
    (tmp_path / "net.params").write_bytes(b"")
    (tmp_path / "net.json").write_bytes(content)
    with pytest.raises(UserError, match=r"net\.json is not valid JSON"):
        read_meta(tmp_path / "net.params")


def test_a_missing_model_description_says_how_to_pass_one(tmp_path):
    (tmp_path / "net.params").write_bytes(b"")
    with pytest.raises(UserError, match="has no net.json beside it saying which network it holds; give its architecture"):
        read_meta(tmp_path / "net.params")

"""A dataset whose annotations are parsed once into records; images are decoded on access."""

from __future__ import annotations

from detsdk.builtin.data.coco import read_image


class RecordsDataset:
    """Serves samples from ``self._records``, which a subclass fills when it is built.

    Each record holds ``boxes`` (float32 N×4), ``labels`` (int64 N), ``iscrowd`` (bool N),
    ``image_id``, ``file`` and ``shape`` (height, width). ``get_annotations`` gives a
    sample without decoding its image (dataset tools, converters, selection use it).
    """

    _records: list[dict]

    def describe(self, index: int) -> str:
        """How an error names the item at ``index`` (a subclass says where it came from)."""
        return f"item {index}"

    def __len__(self) -> int:
        """Number of images."""
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        """The sample at ``index``: the decoded RGB image plus its annotations."""
        sample = self.get_annotations(index)
        sample["image"] = read_image(sample["meta"]["file"], what=self.describe(index))
        sample["meta"]["ori_shape"] = tuple(sample["image"].shape[:2])
        return sample

    def get_annotations(self, index: int) -> dict:
        """The sample at ``index`` without ``image``; ``meta["ori_shape"]`` is the recorded size."""
        record = self._records[index]
        return {
            "boxes": record["boxes"].copy(),
            "labels": record["labels"].copy(),
            "iscrowd": record["iscrowd"].copy(),
            "meta": {"image_id": record["image_id"], "file": record["file"], "ori_shape": record["shape"], "index": index},
        }

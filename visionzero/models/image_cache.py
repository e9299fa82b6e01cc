"""Per-image work done once: the processor's pixels and the vision tower's output.

A game shows each image in many prompts: a seat's image in each of its clue turns, the
original in every vote, and the same prompts again in the update's forwards. Processing
and encoding an image is a function of the image (and, for the encoding, the tower's
weights), so both are computed once and reused:

- pixels (`pixel_values` rows and `image_grid_thw`): per image, for the life of the image;
- tower outputs (the merged patch embeddings the language model reads): per image and tower,
  while the tower's weights are unchanged. The key holds each weight's storage and version
  counter, which an optimizer step, a `load_state_dict` or any in-place write bumps, so a
  trained tower recomputes and a frozen one (`train.prompt_grad=false`, the vision tower
  gets no gradient) encodes each image once per run.

Images are keyed by identity: `load_image` returns one object per file, and an entry is
dropped when its image is collected. Processors and towers are keyed by a serial number
given on first sight and never reused (an id or an address can be: a checkpoint loaded
after another may land on the same memory with the same version counters). Tower outputs
are computed without a graph, so they stand in for the tower only where no gradient has to
reach it (generation, the frozen reference, detached prompts); callers that train through
the tower pass pixels.
"""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch


def unwrap(model, found: Callable[[Any], bool]):
    """The first module, from `model` inwards through peft, accelerate and DDP wrappers (and
    a VLM's inner model), for which `found` holds; None if there is none."""
    seen = model
    for _ in range(6):
        if found(seen):
            return seen
        seen = getattr(seen, "model", None) or getattr(seen, "base_model", None) or getattr(seen, "module", None)
        if seen is None:
            break
    return None


def vision_tower(model) -> torch.nn.Module | None:
    """The module holding a Qwen-VL model's vision tower (`visual`); None without one."""
    return unwrap(model, lambda m: isinstance(getattr(m, "visual", None), torch.nn.Module) and hasattr(m, "get_image_features"))


def takes_encoder_outputs(tower_owner) -> bool:
    """Whether the model that owns the tower accepts pre-computed image encodings
    (`mm_encoder_outputs`, transformers >= 5.2x); wrappers above it pass keywords through."""
    import inspect

    return "mm_encoder_outputs" in inspect.signature(tower_owner.forward).parameters


_SERIALS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_NEXT = itertools.count()


def _serial(obj: Any) -> int:
    """A number for `obj` that no other object ever gets (module docstring)."""
    serial = _SERIALS.get(obj)
    if serial is None:
        serial = _SERIALS[obj] = next(_NEXT)
    return serial


class _Table:
    """image id -> owner serial (an image processor or a tower) -> entry, least recently used
    images dropped beyond `max_bytes` of tensors."""

    def __init__(self, max_bytes: int):
        self.rows: OrderedDict[int, dict[int, tuple]] = OrderedDict()
        self.max_bytes, self.bytes = max_bytes, 0

    @staticmethod
    def _size(entries: dict[int, tuple]) -> int:
        return sum(t.numel() * t.element_size() for entry in entries.values() for t in entry if isinstance(t, torch.Tensor))

    def get(self, image_id: int, owner: int) -> tuple | None:
        entries = self.rows.get(image_id)
        if entries is None or owner not in entries:
            return None
        self.rows.move_to_end(image_id)
        return entries[owner]

    def put(self, image_id: int, owner: int, entry: tuple) -> None:
        entries = self.rows.setdefault(image_id, {})
        self.bytes -= self._size(entries)
        entries[owner] = entry
        self.bytes += self._size(entries)
        self.rows.move_to_end(image_id)
        while self.bytes > self.max_bytes and len(self.rows) > 1:
            _, dropped = self.rows.popitem(last=False)
            self.bytes -= self._size(dropped)

    def drop(self, image_id: int) -> None:
        self.bytes -= self._size(self.rows.pop(image_id, {}))

    def clear(self) -> None:
        self.rows.clear()
        self.bytes = 0


class ImageCache:
    """Pixels and tower outputs per image (module docstring); each table holds at most
    `max_bytes` of tensors (least recently used images go first)."""

    def __init__(self, max_bytes: int = 512 << 20) -> None:
        self._pixels, self._encoded = _Table(max_bytes), _Table(max_bytes)
        self._watched: set[int] = set()
        self.hits = self.misses = 0  # tower outputs reused / computed (bench and tests read them)

    def __len__(self) -> int:
        return len(self._pixels.rows.keys() | self._encoded.rows.keys())

    def _watch(self, image: Any) -> None:
        if id(image) not in self._watched:
            self._watched.add(id(image))
            weakref.finalize(image, self._forget, id(image))

    def _forget(self, image_id: int) -> None:
        self._watched.discard(image_id)
        self._pixels.drop(image_id)
        self._encoded.drop(image_id)

    def clear(self) -> None:
        """Forget every entry (bench/bench_rollout.py measures the engine without the cache)."""
        self._pixels.clear()
        self._encoded.clear()

    def pixels(self, image_processor, images: Sequence[Any], **kwargs) -> dict[str, torch.Tensor]:
        """`image_processor(images, return_tensors="pt")`, each image processed once: the
        same `pixel_values` (rows of all images, in order) and `image_grid_thw`."""
        kwargs = {k: v for k, v in kwargs.items() if k != "return_tensors"}
        if not all(_weakrefable(img) for img in images):
            out = image_processor(images=list(images), return_tensors="pt", **kwargs)
            return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}
        owner = _serial(image_processor)
        parts: dict[int, tuple] = {}
        for img in images:
            entry = self._pixels.get(id(img), owner)
            if entry is not None:
                parts[id(img)] = entry
        todo = list({id(img): img for img in images if id(img) not in parts}.values())
        if todo:
            out = image_processor(images=todo, return_tensors="pt", **kwargs)
            grids = out["image_grid_thw"]
            for img, row, grid in zip(todo, torch.split(out["pixel_values"], grids.prod(-1).tolist()), grids):
                row, grid = row.clone(), grid.clone()  # own storage: the byte bound counts what is held
                self._watch(img)
                self._pixels.put(id(img), owner, (row, grid))
                parts[id(img)] = (row, grid)
        ordered = [parts[id(img)] for img in images]
        return {"pixel_values": torch.cat([p for p, _ in ordered]), "image_grid_thw": torch.stack([g for _, g in ordered])}

    def encoder_outputs(self, model, images: Sequence[Any], pixel_values: torch.Tensor, grid: torch.Tensor) -> dict | None:
        """`mm_encoder_outputs` for `model.forward`/`generate` in place of `pixel_values`:
        the tower's output per image, computed (without a graph) only for images not seen
        with these weights. None when the model cannot take them (then pass the pixels)."""
        tower = vision_tower(model)
        if tower is None or not takes_encoder_outputs(tower) or not all(_weakrefable(img) for img in images):
            return None
        # what the outputs depend on besides the image and the tower: its weights' storage and
        # version counters (bumped by every in-place write) and its mode
        state = (tower.visual.training, *((p.data_ptr(), p._version) for p in tower.visual.parameters()))
        owner = _serial(tower)
        found: dict[int, torch.Tensor] = {}
        todo: dict[int, int] = {}  # image id -> its first index in `images`
        for k, img in enumerate(images):
            entry = self._encoded.get(id(img), owner)
            if entry is not None and entry[0] == state:
                found[id(img)] = entry[1]
            elif id(img) not in todo:
                todo[id(img)] = k
        self.misses += len(todo)
        self.hits += len(images) - len(todo)
        if todo:
            starts = torch.cat([grid.new_zeros(1), grid.prod(-1).cumsum(0)]).tolist()
            order = list(todo.values())
            rows = torch.cat([pixel_values[starts[k] : starts[k + 1]] for k in order])
            with torch.inference_mode(False), torch.no_grad():  # plain tensors: usable outside inference mode
                encoded = tower.get_image_features(rows, grid[order]).pooler_output
            for k, out in zip(order, encoded):
                out = out.clone()  # own storage, as above
                self._watch(images[k])
                self._encoded.put(id(images[k]), owner, (state, out))
                found[id(images[k])] = out
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        per_image = tuple(found[id(img)] for img in images)
        return {"image": BaseModelOutputWithPooling(pooler_output=per_image)}

    def in_place_of_pixels(self, model, images: Sequence[Any], inputs: dict[str, Any]) -> dict[str, Any]:
        """`inputs` with the tower's outputs (`mm_encoder_outputs`) in place of `pixel_values`;
        `inputs` itself when it has no pixels or the model cannot take them."""
        if not images or "pixel_values" not in inputs:
            return inputs
        encoded = self.encoder_outputs(model, images, inputs["pixel_values"], inputs["image_grid_thw"])
        if encoded is None:
            return inputs
        return {**{k: v for k, v in inputs.items() if k != "pixel_values"}, "mm_encoder_outputs": encoded}


def _weakrefable(obj: Any) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


IMAGES = ImageCache()  # the process's cache: one per process, shared by generation and the update

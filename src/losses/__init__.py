"""Loss terms (small pure functions) and their weighted sum."""

import src.utils.compat  # noqa: F401  (torchvision's operator schemas first)

# isort: split

from src.losses.adversarial import d_logistic_loss, g_nonsaturating_loss, r1_penalty
from src.losses.face_id import FaceIdentityLoss, ResNet50FaceNet, load_resnet50_face_weights
from src.losses.geometry import erode_mask, image_laplacian, laplacian_normal_loss, normal_consistency
from src.losses.idmrf import IDMRFLoss, idmrf_distance
from src.losses.landmarks import landmark_loss
from src.losses.mask import mask_mae
from src.losses.perceptual import PerceptualLoss, VGG16Features, build_vgg16_features
from src.losses.photometric import rgb_l1, silhouette_loss
from src.losses.regularizers import (
    edge_length_loss,
    expression_prior,
    identity_prior,
    laplacian_smoothness,
    mesh_edges,
    offset_magnitude,
    uniform_laplacian,
)
from src.losses.semantic import masked_l1, region_label_matrix, semantic_loss
from src.losses.weighted import WeightedLoss

__all__ = [
    "FaceIdentityLoss",
    "IDMRFLoss",
    "PerceptualLoss",
    "ResNet50FaceNet",
    "VGG16Features",
    "WeightedLoss",
    "build_vgg16_features",
    "d_logistic_loss",
    "edge_length_loss",
    "erode_mask",
    "expression_prior",
    "g_nonsaturating_loss",
    "identity_prior",
    "idmrf_distance",
    "image_laplacian",
    "landmark_loss",
    "laplacian_normal_loss",
    "laplacian_smoothness",
    "load_resnet50_face_weights",
    "mask_mae",
    "masked_l1",
    "mesh_edges",
    "normal_consistency",
    "offset_magnitude",
    "r1_penalty",
    "region_label_matrix",
    "rgb_l1",
    "semantic_loss",
    "silhouette_loss",
    "uniform_laplacian",
]

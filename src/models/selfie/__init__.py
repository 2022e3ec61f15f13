"""SelfieAvatar: StyleGAN2-based image avatar."""

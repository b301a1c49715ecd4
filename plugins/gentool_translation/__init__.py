"""Image-to-image translation families for gentool: CycleGAN (unpaired) and Pix2Pix (paired)."""

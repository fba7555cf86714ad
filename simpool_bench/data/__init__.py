"""Dataset readers. Each reader returns a list of ``Record`` (metadata only); images are decoded
lazily by ``ImageDataset`` so that boxes of any count never go through a collate function."""

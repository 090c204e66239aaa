"""An enterprise's data: folders on disk, their quality checks, the bundled data sets."""

"""cusim's napari plugin (``pip install 'cusim[napari]'``; manifest ``napari.yaml``): a reader of cusim-sim
HDF5 files (:mod:`._reader`), a dock widget that runs reconstructions (:mod:`._widget`) and the
pattern-estimation view (:mod:`._spectrum`). Only ``_widget`` imports napari and Qt.
"""

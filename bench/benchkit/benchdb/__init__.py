"""The database page: a Django app that bench/run copies into a baked project (see views.page)."""

"""Rows the page reads and counts: articles by authors, as a small site would have."""

from django.db import models

# Rows the migration writes: enough that the random ids rarely meet, few enough to write in a second.
AUTHORS = 100
ARTICLES = 10_000


class Author(models.Model):
    name = models.CharField(max_length=100)


class Article(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
    title = models.CharField(max_length=200)
    body = models.TextField()
    views = models.PositiveIntegerField(default=0)

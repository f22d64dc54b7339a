"""GET /db: what a typical view does with its database, four statements in Django's autocommit.

Two articles and the first one's author, each a SELECT by primary key, then an UPDATE that counts
a view of the first article (its own transaction: a commit, a WAL or journal flush). The ids are
drawn at random among the rows the migration wrote, so that concurrent updates seldom meet on a row.
"""

import random

from django.db.models import F
from django.http import HttpRequest, HttpResponse

from .models import ARTICLES, Article, Author


def page(request: HttpRequest) -> HttpResponse:
    first, second = random.sample(range(1, ARTICLES + 1), 2)
    article = Article.objects.get(pk=first)
    other = Article.objects.get(pk=second)
    author = Author.objects.get(pk=article.author_id)
    Article.objects.filter(pk=first).update(views=F("views") + 1)
    body = f"{article.title} by {author.name} ({article.views + 1} views); see also {other.title}\n"
    return HttpResponse(body, content_type="text/plain; charset=utf-8")

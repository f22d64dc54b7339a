"""The two tables, and their rows (ids 1..N, which the page draws from)."""

import django.db.models.deletion
from django.db import migrations, models

from ..models import ARTICLES, AUTHORS


def write_rows(apps, schema_editor) -> None:
    author = apps.get_model("benchdb", "Author")
    article = apps.get_model("benchdb", "Article")
    author.objects.bulk_create(author(id=n, name=f"Author {n}") for n in range(1, AUTHORS + 1))
    body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 4
    article.objects.bulk_create(
        (article(id=n, author_id=n % AUTHORS + 1, title=f"Article {n}", body=body) for n in range(1, ARTICLES + 1)),
        batch_size=1000,
    )


class Migration(migrations.Migration):
    initial = True
    # Tuples: Django makes lists of them for each migration it loads.
    dependencies = ()
    operations = (
        migrations.CreateModel(
            name="Author",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
            ],
        ),
        migrations.CreateModel(
            name="Article",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("title", models.CharField(max_length=200)),
                ("body", models.TextField()),
                ("views", models.PositiveIntegerField(default=0)),
                (
                    "author",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="benchdb.author"),
                ),
            ],
        ),
        migrations.RunPython(write_rows, migrations.RunPython.noop),
    )

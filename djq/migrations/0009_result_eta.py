# A task's result row exists from the moment it is sent (PENDING, djq/pending.py); it
# carries the eta the task was sent with, so the admin shows when a waiting task is due.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('djq', '0008_periodic_probe_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='taskresult',
            name='eta',
            field=models.DateTimeField(blank=True, null=True, verbose_name='eta'),
        ),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("claims", "0001_initial")]

    operations = [
        migrations.AddField(model_name="claim", name="status", field=models.CharField(default="open", max_length=16)),
    ]

"""Alert dispatch: matches -> one alert per subject, camera and cooldown window (CloudEvents)."""

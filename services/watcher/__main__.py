from services.watcher.app import service

service.main()

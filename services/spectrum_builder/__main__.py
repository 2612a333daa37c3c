from services.spectrum_builder.app import service

service.main()
